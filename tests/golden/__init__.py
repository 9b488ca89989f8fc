"""Golden expositions: the exact bytes /metrics serves today, recorded before the source/renderer refactor."""
