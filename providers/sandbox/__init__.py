"""The sandbox processor: a small card processor we run ourselves (`server`), its client
(`provider.SandboxProvider`), and the Standard Webhooks signing both share (`signing`)."""
