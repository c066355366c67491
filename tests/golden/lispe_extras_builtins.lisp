; minmax, ==, sign
(println (minmax '(3 1 2)) (minmax 5 -1 4) (minmax '("b" "a" "c")))
(println (== 2 2) (== 2 3) (== "a" "a") (== '(1 4 2) 4) (== '(1 2 3) '(1 0 3)))
(println (sign 5) (sign -2.5) (sign '(1 -2)))
; replaceall: lists and dictionaries in place (returns the count), strings give a new string
(setq fish (list 3 -1 2 -1))
(println (replaceall fish -1 6) fish)
(setq d {"a":1 "b":2 "c":1})
(println (replaceall d 1 0) d)
(println (replaceall "abab" "a" "x"))
; key with key/value pairs builds a dictionary
(println (key "0" "0000" "1" "0001"))
(println (key (key "a" 1) "a"))
; dictionarytree
(println (dictionarytree "b" 2 "a" 1))
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
; set@@ replaces a range: a string variable is rebound, a list changes in place
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
(println (tokenize "a.b . c+d"))
(println (tokenizee "a  b"))
(println (segment "Dr. Li paid 12.5 euros, didn't he? #tag -3"))
(println (segment "3,5 kg" nil true))
(println (segment_e "a b"))
(println (size (segment "")))
(tokenize 42)
