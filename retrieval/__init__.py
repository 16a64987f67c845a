"""Per-tenant document indexes: chunking, a sentence-transformers embedder, FAISS.

Light, safe to import with retrieval off (pydantic and SQLAlchemy only): `settings`, `models`, `errors`, `hits`,
`uploads`, `chunking`. `store` adds numpy. Heavy, import only with retrieval on: `service` (the entry point),
`embedder` (torch, loaded lazily), `index` and `indexes` (FAISS). Imports neither `gateway` nor `trainer`.
"""
