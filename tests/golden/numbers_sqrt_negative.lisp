(sqrt -4)
