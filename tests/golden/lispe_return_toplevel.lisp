; return inside a function leaves the function
(defun find_first (lst limit) (loop x lst (if (> x limit) (return x))) 'none)
(println (find_first '(1 5 9 12) 6) (find_first '(1 2) 6))
; (eval '(return v)) gives v
(println (eval '(return 42)))
; return outside any function (here in a top-level while) ends the script, as LispE's root does:
; the forms after it do not run
(setq i 0)
(while (< i 10)
   (+= i 1)
   (if (eq i 3) (return i)))
(println "not printed" i)
