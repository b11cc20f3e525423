"""Small helpers shared by every room: files, logging, progress."""
