"""The pure decision core: what a server file says (`spec`), a server's state and its phases
(`state`), the actions and why (`actions`, `reasons`, `facts`), the one vocabulary of events
(`events`), the planner (`plan`) with its rollout and backoff rules, and the names every layer
agrees on. Plain data work: no I/O, no asyncio, no processes (an import contract keeps it so).
Everything else builds on it; it imports nothing of the gateway."""
