"""XRouter's gateway tier: the OpenAI/OpenRouter-compatible HTTP API in front of the routers."""
