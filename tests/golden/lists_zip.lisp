(println (zip '(1 2 3) '(a b c)) (zip '(1 2) '(3 4) '(5 6)))
(println (zipwith '+ '(1 2 3) '(10 20 30)) (zipwith (lambda (a b) (list a b)) '(1) '(2)))
