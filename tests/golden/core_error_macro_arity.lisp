(defmacro two (a b) (list a b))
(println (two 1 2))
(println (two 1))
