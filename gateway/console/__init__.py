"""The web console at /console: server-rendered pages over the same services the admin API uses.

router.py      the routes (thin): pages, sign-in/out, the changes a person can make
access.py      who is signed in (`Viewer`), what they may see and change, CSRF
sessions.py    sessions in the database: a random id in the cookie, only its hash stored
rendering.py   Jinja2 templates, HTML error pages
pages/         what each page shows, read from the registry, the record, the runs, retrieval
settings_form.py  tenant settings as a form, checked by the parts that own them
plots/         SVG charts drawn on the server
templates/, static/   shipped with the package: no CDN, no build step
"""
