"""The admin API over a tenant's documents and index (retrieval): upload, list, show, delete, rebuild.

protocol.py   wire types
uploads.py    reading a multipart upload within its own size limit
router.py     the routes, under /admin/tenants/{t}/
"""
