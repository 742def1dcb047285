"""Provides the engine's control channel: a private Unix socket per state file, a versioned JSON-lines
protocol, the server inside the engine process and the client the CLI (and consoles) use."""
