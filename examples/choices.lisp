; choices.lisp -- multiple-choice answers with the "choices" constraint on SmolLM2-135M-Instruct.
; model: smollm2
;
; With "choices", the output is exactly one of the strings given: the model only chooses which.
; torch_generate_scored also reports how sure it was: the log-probability of each token, both as
; the model gave it ("raw") and after the constraint removed every other continuation.

(use 'lispe_torch)

(setq model (torch_hf_load_model "SmolLM2-135M-Instruct"))
(setq generator (torch_generator_create model "cpu"))

; the question asks for one word: the constrained answer then starts where the model would start
(defun ask (question options)
  (torch_generate_text generator (tokenizer_chat (list (list "user" (+ question " Answer with one word."))))
                       {"choices":options "max_length":8}))

(println "Red planet:" (ask "Which planet is known as the Red Planet?" (strings "Mercury" "Venus" "Mars" "Jupiter")))
(println "Capital of Italy:" (ask "What is the capital of Italy?" (strings "Madrid" "Rome" "Berlin")))
(println "Colour of grass:" (ask "What colour is grass?" (strings "Green" "Blue" "Red")))

; the same question with scores: the first token decides the answer
(setq scored (torch_generate_scored generator
                (tokenizer_chat '(("user" "Which planet is known as the Red Planet? Answer with one word.")))
                {"choices":(strings "Mercury" "Venus" "Mars" "Jupiter") "max_length":8} 3))
(println "Scored answer:" (@ scored "text"))
(setq first (@ (@ scored "tokens") 0))
(println "First token" (@ first "text") ": logprob under the constraint" (@ first "logprob")
         ", raw model logprob" (@ first "raw_logprob"))
(println "Alternatives the constraint left (id text logprob):" (@ first "top"))
