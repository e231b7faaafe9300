"""The machine around the engine: one gateway per data folder (`instance`), the battery
(`power`), what the OS says of the session (`hostevents`), the servers' folder watched
(`watch`) and the figures sampled (`sampler`). Each is handed the runtime and what else it
uses; they build on the engine, and the features and the daemon build on them."""
