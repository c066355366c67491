; strategy_top_k.lisp -- the "Top-k sampling" snippet of docs/guide.md, on SmolLM2-135M-Instruct.
; model: smollm2
;
; The snippet's lines are kept verbatim. Lines after a "; [added]" comment bind what they assume
; (`generator`, `input_tokens`) and print the results.

(use 'lispe_torch)

; [added] a generator on the embedded model and a conversational prompt in its chat format
(setq model (torch_hf_load_model "SmolLM2-135M-Instruct"))
(setq generator (torch_generator_create model "cpu"))
(setq input_tokens (torch_tensor (tokenizer_chat '(("user" "Say hello to a new friend in one sentence.")))))

; Configure Top-K
(torch_set_generation_params generator 50 0.8 40 0.9)
(setq topk_result (torch_generate generator input_tokens "top_k"))

; [added] two more draws: sampling gives varied answers
(println "Generator:" generator)
(println "Top-K answer 1:" (tokenizer_decode (tensor_slice topk_result 0 (size input_tokens) (size topk_result))))
(loop i (integers 2 3)
    (setq topk_result (torch_generate generator input_tokens "top_k"))
    (println "Top-K answer" i ":" (tokenizer_decode (tensor_slice topk_result 0 (size input_tokens) (size topk_result)))))
