"""service: use cases (buckets, objects, later multipart, versioning, IAM). Authorization lives here."""
