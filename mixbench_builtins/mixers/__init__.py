"""Built-in token mixers; each module registers one mixer through the public plugin hook."""
