//! Trading's vocabulary: the side of an order.

crate::names! {
    /// What the user does with the pair's base asset.
    pub enum Side {
        /// Pays the quote asset, receives the base asset.
        Buy = "buy",
        /// Gives the base asset, receives the quote asset.
        Sell = "sell",
    }
}
