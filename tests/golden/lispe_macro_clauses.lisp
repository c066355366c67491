; defmacro with several pattern clauses: all are kept, the first that matches the call is used
(defmacro tang (('< x y) $ z) (loop x (range 0 y 1) $ z))
(defmacro tang (('> x y) $ z) (loop x (range y 0 -1) $ z))
(tang (< i 3) (print i " "))
(println)
(tang (> i 3) (print i " "))
(println)
; a quoted parameter must appear as such; a list destructures; literals must be equal
(defmacro pick ('first a b) a)
(defmacro pick ('second a b) b)
(defmacro pick (0 (a $ r)) (list a (quote r)))
(println (pick first 1 2) (pick second 1 2) (pick 0 (10 20 30)))
; no clause matches: an error naming the macro
(tang (= i 3) (print i))
