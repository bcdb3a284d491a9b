"""The normalized domain: models, ids, cursors and the interval arithmetic on readings."""
