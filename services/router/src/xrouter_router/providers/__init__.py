"""Provider adapters: one module per upstream wire format, each implementing domain.ports.ChatProvider."""
