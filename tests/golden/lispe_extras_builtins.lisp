; key with key/value pairs builds a dictionary
(println (key "0" "0000" "1" "0001"))
(println (key (key "a" 1) "a"))
; link gives a function a new name
(link "∑" 'sum)
(link "twice" 'double)
(defun double (x) (* 2 x))
(println (∑ '(1 2 3)) (twice 4))
(println (catch (link "sq" 'nosuchfunction)))
; trace: a flag only
(println (trace) (trace true) (trace) (trace nil))
; deaccentuate
(println (deaccentuate "élève à Noël, ça"))
; set@@ (a form) replaces a range: a string variable is rebound, a list changes in place
(setq s "### Title")
(set@@ s 0 " " "H:")
(println s)
(setq l (list 1 2 3 4))
(set@@ l 1 3 '(8 9 10))
(println l)
(println (set@@ "abcdef" -2 6 "Z"))
(println (catch (set@@ "abc" 2 1 "x")))
; LispE's string tokenizers
(println (tokenize "(setq x (+ a1 -2.5)) ; c"))
(println (tokenize "a.b . c+d .5 -.25"))
(println (tokenizee "a  b"))
(println (segment "Dr. Li paid 12.5 euros, didn't he? #tag -3"))
(println (segment "3,5 kg" 1))
(println (segment_e "a b"))
(println (size (segment "")))
(tokenize 42)
