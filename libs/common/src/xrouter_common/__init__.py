"""Code both XRouter services share: environment settings, wire constants, trace context."""
