"""The engine that carries the plan out: the loop (`loop.Reconciler`) and the loader of the
servers' folder (`config`), the runtime it keeps (`runtime`, with each server's remembered
versions, `rollout_memory`, `remembered`), the actuators (`act`, `replace`, `trial`) on the
launch floor (`launch`, `children`), what it observes (`observe`, `health`; a sleep of the host,
`resume`), the health history (`checklog`), the gateway's own parts (`own`) and the runner of
background tasks (`runner`). It builds on the core and the platform, and imports no host
watcher, feature (tunnel, ops) or page."""
