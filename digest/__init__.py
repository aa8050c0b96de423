"""Daily Papers Digest: the library. Every decision lives here; workers/ and web routes are thin."""
