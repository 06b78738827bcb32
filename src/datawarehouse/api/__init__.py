"""api: protocol adapters (S3, admin, console) that parse a request, call a service, render the answer."""
