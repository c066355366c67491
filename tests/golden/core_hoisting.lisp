; a function may be called above its definition: defun is hoisted
(println (square 7))
(println (twice 'a))

(defun square (x) (* x x))
(defmacro twice (x) (list x x))
