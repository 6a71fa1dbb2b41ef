"""The sandbox processor: a small card processor we run ourselves (`processor`, its HTTP API
in `routes`, served by `server`), its client (`provider.SandboxProvider`), and the Standard
Webhooks signing both share (`signing`)."""
