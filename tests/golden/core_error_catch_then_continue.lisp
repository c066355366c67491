; after a caught error the program goes on, deep recursion included
(defun deep (n) (if (= n 0) 0 (+ 1 (deep (- n 1)))))
(println (maybe (deep 1000000) "overflow caught"))
(println (deep 10000))
(println (catch (undefined_fn 1)))
