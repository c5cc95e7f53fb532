"""Software inventory: OS identification, OS packages and application packages."""
