(nullp 1 2)
