"""The HTTP edge's plumbing: the web process's services, auth, problem+json, the OpenAPI
document.
"""
