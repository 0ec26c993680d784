"""The dashboard: server-rendered pages over the same query functions as the API (issue 24).

Pages sit at the HTTP edge beside the packages' `endpoints`: a browser signs in with an org API
key (`sessions`), and every page reads through the functions its API endpoint calls, scoped to
that org. Templates and static assets ship in this package; nothing loads from a CDN.
"""
