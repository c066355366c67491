; (irange start step) is infinite: take/takewhile read it, other builtins refuse it
(println (take 3 (irange 0 1)))
(size (irange 0 1))
