-- wrk script: the same visitor calls the same page again and again: duplicates, no writes.
wrk.headers["X-Forwarded-For"] = "10.0.0.1"
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0"
wrk.path = "/call/blog"
