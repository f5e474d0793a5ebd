"""HTTP protocol cores (pure) and the Twisted protocol that drives them."""
