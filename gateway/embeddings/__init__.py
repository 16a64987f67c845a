"""`POST /v1/embeddings`, OpenAI-compatible, with the retrieval embedder (so tenants embed with their API key).

protocol.py   wire types
serving.py    checking a request and encoding the vectors (float or base64)
router.py     the route
"""
