; load runs another file in the same interpreter, relative to the script folder
(println (load "data/helper_lib.lisp"))
(println (helper_double 21) helper_loaded)
(load "data/broken_lib.lisp")
