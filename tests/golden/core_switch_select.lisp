(defun color (c)
   (switch c
      ("red" 'stop)
      ("green" 'go)
      (1 'one)
      (true 'unknown)))
(println (color "red") (color "green") (color 1) (color "blue"))
(println (switch 5 (1 'a)))
(println (select nil nil 3 4) (select nil) (select "" 1))
