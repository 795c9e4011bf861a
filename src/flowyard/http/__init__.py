"""The HTTP layer: a thin Starlette app that decodes requests and calls the runtime."""
