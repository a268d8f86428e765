"""`tlcli report`: one self-contained HTML page of a run, its evaluations and its data's audit.

`sources` reads what the commands left (a run, evaluate's reports, an audit, explain's maps),
`sections` turns it into what the page shows, `thumbnails` makes the small inlined pictures,
`page` renders the Jinja2 template (autoescaped: every user string is text) and `report`
claims the output and writes it. The page asks the network for nothing: a Content-Security-Policy
allows only inline styles and `data:` images, and no script runs.
"""
