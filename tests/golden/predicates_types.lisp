(println (numberp 1) (numberp 1.5) (numberp "1") (integerp 1) (integerp 1.0) (floatp 1.5) (floatp 1))
(println (stringp "a") (stringp 'a) (dictionaryp {}) (dictionaryp '()) (symbolp 'a) (symbolp "a"))
(println (listp '(1)) (listp ()) (listp nil) (listp "a") (consp '(1)) (consp ()))
(println (atomp 'a) (atomp 1) (atomp "s") (atomp '(1)) (atomp ()) (atomp {"a":1}))
