(map (lambda (x) x) 42)
