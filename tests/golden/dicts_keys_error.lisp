(keys 5)
