"""What each console page shows, gathered from the services the admin API uses. Blocking (the database): the
router calls these in a worker thread."""
