"""The alert engine, its lifecycle store and its notifications (issue #12)."""
