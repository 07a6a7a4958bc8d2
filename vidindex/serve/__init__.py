"""`vidindex serve`: the index as a service on Ray Serve, with the model kept warm, and a web page.

    app.py      the Serve application: Front (FastAPI ingress), Asker (model replicas), ArchiveJobs
    api.py      the HTTP routes: JSON API (OpenAPI at /docs), the page, thumbnails, video bytes
    asker.py    a model replica: loads and warms the models once, asks as of T, archive batches
    jobs.py     ask-the-archive jobs: submit, progress, results
    catalog.py  videos and their rows; the checks on ids and times from requests
    media.py    thumbnails (decoded on demand, cached) and byte ranges of the videos
    auth.py     loopback by default; a token otherwise, checked on every request
    errors.py   errors as JSON, never a traceback
    static/     the web page (plain HTML, CSS and JavaScript; works offline)

Nothing is imported here: the CLI imports Ray Serve only when it serves.
"""
