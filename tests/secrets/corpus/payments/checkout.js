// checkout page
const stripe = Stripe('pk_live_51pnVh8knpo7EOxIqtYVH4HE57aEWRgPdg9ZCsmbWs');
const elements = stripe.elements();
