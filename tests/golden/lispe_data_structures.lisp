; data@ structures: constructors check their fields, values are lists headed by the name
(data@ (Point integer_ integer_) (Pixel _ _) (Circle (Point _ _) _) (Rectangle (Point _ _) _ _))
(setq p (Point 1 2))
(println p (car p) (cdr p) (type p) (size p))
(println (Circle (Point 3 4) 5))
(defpat surface ((Circle (Point x y) r)) (* 3 r r))
(defpat surface ((Rectangle _ h w)) (* h w))
(defpat surface (x) 'unknown)
(println (surface (Circle (Point 12 32) 10)))
(println (surface (Rectangle (Point 21 20) 10 20)))
(println (surface (Point 1 2)) (surface '(Circle 1 2)))
; the constructor can be reached through an atom
(println (surface ((atom "Circle") (Point 20 30) 3)))
; a common ancestor: (Shape x) matches any of its structures
(data@ Shape (Triangle _) (Square _))
(defpat dimension ((Shape x)) (list 'dimension x))
(defpat dimension (x) 'no_shape)
(println (dimension (Triangle 10)) (dimension (Square 20)) (dimension (Pixel 1 2)))
; wrong arguments are errors
(println (catch (Point 1 "a")))
(println (catch (Circle (Pixel 1 2) 3)))
(Point 1)
