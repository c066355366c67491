(println (foldl '- 10 '(1 2 3)) (foldr '- 10 '(1 2 3)) (foldl '+ 0 ()) (foldl (lambda (acc x) (consb acc x)) () '(1 2)))
(println (scanl '+ 0 '(1 2 3)) (scanl '* 1 '(2 3)))
