"""The demo's synthetic LLM app: banking traffic through the real SDK, and a bad prompt version partway.

It imports only the SDK (it stands for a user's app); ``llmsight demo`` (the CLI) runs it beside the stack.
"""
