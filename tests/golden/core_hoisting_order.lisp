; use, then defmacro, then defun/defpat are hoisted: a defun may use a macro defined below it
(println (area 3))
(println (sign -4) (sign 0))
(defun area (r) (times_pi (* r r)))
(defmacro times_pi (x) (* _pi x))
(defpat sign (0) 'zero)
(defpat sign ((integer_ n)) (if (< n 0) 'negative 'positive))
