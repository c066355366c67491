; Arguments given by name with LispE's (? name value): to defun/lambda parameters and class@
; fields; optional ones left out take their default; unknown or doubled names are errors.
(defun box (w h (depth 1) (label "box")) (list label w h depth))
(println (box 2 3 (? label "crate")))
(println (box 2 3 (? label "bin") (? depth 7)))
(println (box (? h 5) (? w 4)))
(setq area (λ (w (h w)) (* w h)))
(println (area 3) (area 3 (? h 10)))
(class@ Pen (color (width 1) (style 'solid)) (defun show () (list color width style)))
(setq p (Pen "red" (? style 'dashed)))
(println (p (show)))
(println (maybe (box 1 2 (? colour "x")) "no parameter named colour"))
(println (maybe (box 1 2 (? w 9)) "w given twice"))
(println (maybe (box (? depth 3)) "w and h missing"))
