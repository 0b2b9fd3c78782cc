"""The teacher LLM: prompt rendering, reply validation, request cache, async client, Beam ModelHandler.

Pure pieces (prompt, reply, cache) import nothing from Beam; `handler` is the thin Beam adapter.
"""
