(println (nullp nil) (nullp false) (nullp ()) (nullp 0) (nullp ""))
(println (zerop 0) (zerop 0.0) (zerop 1) (zerop "0") (zerop nil))
(println (emptyp ()) (emptyp "") (emptyp {}) (emptyp nil) (emptyp '(1)) (emptyp "a") (emptyp 0))
(println (negativep -1) (negativep 0) (positivep 2.5) (positivep -2) (positivep "3"))
