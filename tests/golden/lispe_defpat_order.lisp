; as in LispE, clauses are indexed by the label of their first pattern (a type, a literal's type or a
; data@ name); a call tries the clauses indexed by its first argument's label first, then the others
(defpat f (x) 'any)
(defpat f ((integer_ n)) 'int)
(defpat f ((string_ n)) 'str)
(println (f 3) (f "a") (f 'a) (f '(1)))
(data@ (Point _ _) (Pixel _ _))
(defpat g (x) 'other)
(defpat g ((Point a b)) (list 'point a b))
(println (g (Point 1 2)) (g (Pixel 1 2)) (g 5))
; a structure's ancestor indexes its children too
(data@ Shape (Triangle _) (Square _))
(defpat dim (x) 'other)
(defpat dim ((Shape x)) (list 'shape x))
(println (dim (Triangle 3)) (dim (Square 4)) (dim 4))
; within one label, definition order: a literal 0 is indexed as integer_
(defpat describe (0) "zero")
(defpat describe ((integer_ n)) (+ "int " n))
(defpat describe (_) "other")
(println (describe 0) (describe 7) (describe "a"))
